"""The `lib` package of the course "ImageNet and the Progress of AI".

Small modules, each named for what it holds, each function pointing back to the chapter that
explains it:

- `lib.shapes`     the generated dataset (a miniature ImageNet drawn from a seed)
- `lib.data`       every dataset by name, and the loaders that feed training
- `lib.models`     the article's CNN, a small ResNet, torchvision's architectures by name
- `lib.train`      `fit`, `evaluate`, `predict`, and the command line `python -m lib.train`
- `lib.metrics`    accuracy, top-k, confusion matrix, precision, recall, F1
- `lib.plots`      training curves, image grids, confusion matrices
- `lib.checkpoint` atomic checkpoints and the provenance saved with results
- `lib.params`     checking a notebook's papermill parameters
- `lib.run`        running a chapter, or a sweep of it, with papermill (`python -m lib.run`)
- `lib.book`       small helpers for the notebooks (glue that also works outside the book)

Import the modules you need (`from lib import data, train`); this file imports none of them, so that
`python -m lib.train` starts cleanly.
"""

__version__ = "0.1.0"
