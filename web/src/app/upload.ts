// The page's data upload form: a zip of class folders goes to PUT /api/projects/{id}/data/{split}
// with the owner's token, with a progress bar while it uploads and the server's report after.

export {}; // a module: its names stay its own

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;

function upload(project: number, split: string, token: string, file: File) {
  const bar = $<HTMLProgressElement>("#upload-progress");
  const out = $("#upload-result");
  const xhr = new XMLHttpRequest();
  xhr.open("PUT", `/api/projects/${project}/data/${split}`);
  xhr.setRequestHeader("Content-Type", "application/zip");
  if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
  xhr.upload.onprogress = (ev) => {
    if (ev.lengthComputable) bar.value = ev.loaded / ev.total;
    out.textContent = `uploading ${(ev.loaded / 1e6).toFixed(1)} / ${(ev.total / 1e6).toFixed(1)} MB`;
  };
  xhr.upload.onload = () => (out.textContent = "uploaded; the server is decoding the images…");
  xhr.onload = () => {
    const body = JSON.parse(xhr.responseText || "{}");
    if (xhr.status !== 200) {
      out.className = "error";
      out.textContent = `${body.code ?? xhr.status}: ${body.message ?? xhr.statusText}`;
      return;
    }
    out.className = "";
    const skipped = body.skipped_non_images.length, corrupt = body.corrupt_images.length;
    out.textContent = `${body.count} images in ${body.labels.length} classes (${body.labels.slice(0, 10).join(", ")}); ` +
      `${skipped} non-image files skipped, ${corrupt} corrupt images skipped${corrupt ? ": " + body.corrupt_images.slice(0, 5).join(", ") : ""}`;
  };
  xhr.onerror = () => (out.textContent = "upload failed: the server could not be reached");
  bar.value = 0;
  xhr.send(file);
}

$("#upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const file = $<HTMLInputElement>("#upload-file").files?.[0];
  const project = Number($<HTMLInputElement>("#upload-project").value);
  if (!file || !project) {
    $("#upload-result").textContent = "choose a project id and a zip file";
    return;
  }
  upload(project, $<HTMLSelectElement>("#upload-split").value, $<HTMLInputElement>("#upload-token").value.trim(), file);
});
