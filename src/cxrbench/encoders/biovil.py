"""BioViL-T (Microsoft) through hi-ml-multimodal's own `ImageModel` (ResNet-50 multi-image, projection 128).

The released file is a plain state dict; it is read with `torch.load(weights_only=True)` (hi-ml's own
loader unpickles without that guard) and loaded strictly. Static mode, as RAD-DINO evaluated it: no
previous image, so the learned "missing previous" embedding fills the temporal half of the 512 channels.

- global embedding: the 512-d average-pooled `img_embedding`
- patch tokens: the 14x14x512 fused patch map at 448 px (stride 32)
- layers 0-3: the ResNet-50 stages at strides 4, 8, 16, 32 (256/512/1024/2048 channels), a native pyramid
"""

from __future__ import annotations

import torch

from cxrbench.encoders.base import Encoder, FeatureRequest, Features
from cxrbench.errors import WeightsError

STAGE_STRIDES = (4, 8, 16, 32)


def _image_model(joint_feature_size: int) -> torch.nn.Module:
    try:
        from health_multimodal.image.model.model import ImageModel
        from health_multimodal.image.model.types import ImageEncoderType
    except ImportError as exc:
        raise WeightsError("biovil-t needs hi-ml-multimodal: pip install 'cxrbench[biovil]'.") from exc
    return ImageModel(img_encoder_type=ImageEncoderType.RESNET50_MULTI_IMAGE, joint_feature_size=joint_feature_size)


class BioVilTEncoder(Encoder):
    def _construct(self) -> torch.nn.Module:
        return _image_model(int(self.spec.architecture["joint_feature_size"]))


    @property
    def embed_dim(self) -> int:
        return 512

    @property
    def patch_stride(self) -> int:
        return 32

    @property
    def num_layers(self) -> int:
        return len(STAGE_STRIDES)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        stages: dict[int, torch.Tensor] = {}
        hooks = []
        if request.layers:
            resnet = self.model.encoder.encoder
            for index, stage in enumerate((resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)):
                if index in request.layers:
                    hooks.append(stage.register_forward_hook(lambda _m, _i, out, index=index: stages.__setitem__(index, out)))
        try:
            output = self.model(pixels)
        finally:
            for hook in hooks:
                hook.remove()
        features = Features()
        if request.global_embedding:
            features.global_embedding = output.img_embedding
        if request.patch_tokens:
            features.patch_tokens = output.patch_embeddings.permute(0, 2, 3, 1)
        for index in request.layers:
            features.layers[index] = stages[index].permute(0, 2, 3, 1)
        return features
