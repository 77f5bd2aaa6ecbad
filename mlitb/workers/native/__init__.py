"""Native workers: PyTorch trainers and trackers that join a project like a browser (`mlitb worker --engine torch`).

Importing this package does not import PyTorch; `mlitb.workers.native.engine` does. The one place that knows
how our flat float32 parameters (TF.js layout) map onto PyTorch's is `layout.py`.
"""

INSTALL_HINT = "pip install 'mlitb[torch]'  (or: pip install torch==2.13.0)"


def torch_missing() -> str | None:
    """None if PyTorch imports, else a message with the install command."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return f"the torch engine needs PyTorch, which is not installed ({exc}); install it with: {INSTALL_HINT}"
    return None
