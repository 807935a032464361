"""An ImageNet ResNet saved by torchvision loads into the trunk by path; a wrong file is named."""
from __future__ import annotations

import pytest
import torch

from tests.support.model_fixtures import preset_model_config
from stark.model.resnet import resnet_trunk
from stark.model.stark import build_stark


def torchvision_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """What torchvision's resnet.state_dict() holds: trunk keys + num_batches_tracked + layer4 + fc."""
    torch.manual_seed(seed)
    state = {k: torch.randn_like(v) for k, v in resnet_trunk(name).state_dict().items()}
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = state[key].abs() + 0.1
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(100)
    state["layer4.0.conv1.weight"] = torch.randn(8, 8, 1, 1)
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 8), torch.randn(1000)
    return state


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_imagenet_weights_load_from_the_configured_path(tmp_path, name):
    state = torchvision_state_dict(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    cfg = preset_model_config("stark_tiny", **{"backbone.name": name, "backbone.weights": str(path)})
    body = build_stark(cfg).backbone.body
    loaded = body.state_dict()
    assert loaded and all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_weights_of_another_depth_are_refused_with_the_path(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision_state_dict("resnet50"), path)
    cfg = preset_model_config("stark_tiny", **{"backbone.name": "resnet18", "backbone.weights": str(path)})
    with pytest.raises(ValueError, match=str(path)):
        build_stark(cfg)
