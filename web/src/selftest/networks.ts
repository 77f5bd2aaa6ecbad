// Networks the self-test page trains and measures: the paper's, and the CIFAR-size one of issue 14.
import * as tfl from "@tensorflow/tfjs-layers";

type Shape3 = [number, number, number];

export function paperNetwork(classes = 10): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [28, 28, 1], kernelSize: 5, filters: 16, strides: 1, padding: "same", activation: "relu" }),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: classes, activation: "softmax" }),
    ],
  });
}

/** 32x32x3 -> conv 3x3x32 -> conv 3x3x32 -> maxpool -> conv 3x3x64 -> conv 3x3x64 -> maxpool -> dense softmax
 * (ReLU, same padding; 77,859 parameters with 3 classes): what people train on CIFAR-10, scaled to the data. */
export function cifarNetwork(classes = 3): tfl.LayersModel {
  const conv = (filters: number, extra: object = {}) =>
    tfl.layers.conv2d({ kernelSize: 3, filters, strides: 1, padding: "same", activation: "relu", ...extra });
  return tfl.sequential({
    layers: [
      conv(32, { inputShape: [32, 32, 3] }),
      conv(32),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      conv(64),
      conv(64),
      tfl.layers.maxPooling2d({ poolSize: 2, strides: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: classes, activation: "softmax" }),
    ],
  });
}

/** The networks the throughput and profile checks can train, by the name the benchmark passes (?network=). */
export const BENCH_NETWORKS: Record<string, { shape: Shape3; classes: number; make: () => tfl.LayersModel }> = {
  paper: { shape: [28, 28, 1], classes: 10, make: () => paperNetwork() },
  cifar: { shape: [32, 32, 3], classes: 3, make: () => cifarNetwork() },
};
