"""Well-known PyTorch, Keras and fastai weights, with the checksums their publishers give.

Sources of the figures:
- torchvision: the weights' URLs in torchvision.models (`resnet18-f37072fd.pth`...); the hex
  after the last '-' is the start of the file's sha256, checked as torch.hub does.
- Keras applications: `WEIGHTS_HASHES` (md5) in keras/src/applications/resnet.py, files under
  https://storage.googleapis.com/tensorflow/keras-applications/resnet/.
- fastai: fastai/data/checks.txt (size, md5) for the model zoo's archives, which fastai
  unpacks into FASTAI_HOME/models (`untar_data(url, c_key='model')`).
"""
from __future__ import annotations

from dataclasses import dataclass

from admin.ops.file_download import Checksum

KERAS_RESNET = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
FASTAI_ZOO = "https://s3.amazonaws.com/fast-ai-modelzoo/"
TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class CatalogEntry:
    provider: str       # torch, keras or fastai
    name: str           # what the form takes, e.g. "resnet18"
    url: str
    description: str
    checksum: Checksum | None = None   # full digest, where published
    size_bytes: int | None = None      # where published

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("torch", "resnet18", TORCHVISION + "resnet18-f37072fd.pth",
                 "torchvision ResNet-18, ImageNet-1k (IMAGENET1K_V1)"),
    CatalogEntry("torch", "resnet34", TORCHVISION + "resnet34-b627a593.pth",
                 "torchvision ResNet-34, ImageNet-1k (IMAGENET1K_V1)"),
    CatalogEntry("torch", "resnet50", TORCHVISION + "resnet50-0676ba61.pth",
                 "torchvision ResNet-50, ImageNet-1k (IMAGENET1K_V1)"),
    CatalogEntry("keras", "resnet50", KERAS_RESNET + "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                 "Keras applications ResNet50, ImageNet, with top",
                 Checksum("md5", "2cb95161c43110f7111970584f804107")),
    CatalogEntry("keras", "resnet50_notop", KERAS_RESNET + "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "Keras applications ResNet50, ImageNet, without top",
                 Checksum("md5", "4d473c1dd8becc155b73f8504c6f6626")),
    CatalogEntry("keras", "resnet101", KERAS_RESNET + "resnet101_weights_tf_dim_ordering_tf_kernels.h5",
                 "Keras applications ResNet101, ImageNet, with top",
                 Checksum("md5", "f1aeb4b969a6efcfb50fad2f0c20cfc5")),
    CatalogEntry("fastai", "wt103", FASTAI_ZOO + "wt103.tgz",
                 "fastai AWD-LSTM language model pretrained on WikiText-103",
                 Checksum("md5", "76fd08236c78bf91b7fb76698d53afa3"), 206789489),
    CatalogEntry("fastai", "transformer", FASTAI_ZOO + "transformer.tgz",
                 "fastai OpenAI GPT transformer weights",
                 Checksum("md5", "024b0d2203ebb0cd1fc64b27cf8af18e"), 432848315),
)


def catalog_entry(provider: str, name: str) -> CatalogEntry | None:
    return next((e for e in CATALOG if e.provider == provider and e.name == name), None)


def catalog_names(provider: str) -> list[str]:
    return [e.name for e in CATALOG if e.provider == provider]
