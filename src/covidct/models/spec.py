"""A model spec: a paper name mapped onto a timm architecture, as data (like timm's ``pretrained_cfg``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One backbone: its paper name, timm architecture and the settings the paper used."""

    name: str  # paper name, e.g. "EfficientNetB5"
    timm_name: str  # timm "arch.tag", e.g. "tf_efficientnet_b5.ns_jft_in1k"
    input_size: int  # the Keras default input size the paper used
    cam_layer: str  # Grad-CAM target, resolved with model.get_submodule()
    family: str = "other"
    pretrained_weights: str = "ImageNet"  # description of the pretrained tag
    note: str = ""
    paper: bool = True  # one of the paper's 20 (False: an extra, e.g. with offline-installable weights)
    pre_logits: bool = True  # False: no pre-logits MLP before the pooled head (Keras include_top=False + GAP)

    @property
    def arch(self) -> str:
        """The timm architecture without its pretrained tag."""
        return self.timm_name.split(".", 1)[0]
