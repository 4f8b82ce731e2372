"""The `lib` package of the course "ImageNet and the Progress of AI".

Small modules, each named for what it holds, each function pointing back to the chapter that
explains it:

- `lib.shapes`      the generated dataset (a miniature ImageNet drawn from a seed)
- `lib.data`        every dataset by name, and the loaders that feed training
- `lib.models`      the article's CNN, a small ResNet, torchvision's architectures by name
- `lib.config`      `TrainConfig`: every training setting, its rules and its command-line flags
- `lib.seeds`       the random streams of training, named in one place
- `lib.train`       `fit`, the one-epoch step, `evaluate` and `predict`
- `lib.metrics`     accuracy, top-k, confusion matrix, precision, recall, F1
- `lib.plots`       training curves, image grids, confusion heat maps, in a colour-blind-safe palette
- `lib.files`       files written atomically
- `lib.checkpoint`  checkpoints written atomically and read safely
- `lib.results`     the typed record of a run's metrics file, with its provenance
- `lib.params`      checking a notebook's papermill parameters
- `lib.run`         running a chapter, or a sweep of it, with papermill
- `lib.cli`         the command lines (`python -m lib.train`, `lib.evaluate`, `lib.run`), one group of
                    dataset flags shared by training and scoring
- `lib.book`        small helpers for the notebooks (glue that also works outside the book)
- `lib.pretrained`  ImageNet-trained networks by name, with their preprocessing, 1000 classes and wnids
                    (EfficientNet-Lite0 offline)
- `lib.photos`      real photos that ship offline (scikit-image, scikit-learn), with their class where certain
- `lib.evaluate`    scoring a pretrained network or a checkpoint on a split
- `lib.transfer`    frozen embeddings, linear probes and fine-tuning (transfer learning)
- `lib.search`      image search: unit-length embeddings, exact cosine top-k, FAISS flat/IVF/HNSW indexes,
                    recall@k, precision@k, near-duplicates (chapter 6.3)
- `lib.scenes`      generated detection scenes with boxes (chapter 6.4)
- `lib.coco`        reading and writing COCO-format detection data (chapter 6.4)
- `lib.corruptions` common corruptions at five severities (ImageNet-C style), corruption error and mCE
                    (chapter 6.5)
- `lib.calibration` calibration error, reliability, temperature scaling, abstention (chapter 6.6)
- `lib.imbalance`   rare-positive tasks, oversampling, costs and thresholds (chapter 6.6)
- `lib.medical`     the MedMNIST datasets (chapter 6.6)
- `lib.edge`        size, FLOPs, latency, int8 quantisation and ONNX export (chapter 6.7)
- `lib.attacks`     adversarial examples: the fast gradient sign method (chapter 8)
- `lib.fast`        a fast CIFAR-10 recipe, one switch per ingredient
- `lib.distributed` who each torchrun process is, its shard of the data, and reductions across processes
- `lib.student`     the student edition: the chapters without their solutions (`python -m lib.student`)

Import the modules you need (`from lib import data, train`); this file imports none of them, so that
`python -m lib.train` starts cleanly.
"""

__version__ = "0.1.0"
