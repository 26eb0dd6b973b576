"""Optical flow, the fifth kind of component: warping and the certainty of a flow against
hand-made flows, .flo files, the built-in providers (dis, file, raft), the check of what a
provider returns, and the kind in the registry, the listing, the recipe and the builder."""

import re
import struct
import sys
from importlib.metadata import entry_points

import pytest
import torch

import stylekit.builtins.flow as builtin_flow
from stylekit.builtins.flow import DIS, RAFT, FlowFiles
from stylekit.component_checks.flow import FRAME_SIZE, shifted_frames
from stylekit.contract.flow import FlowProvider, FramePair
from stylekit.errors import PluginError, UserError
from stylekit.files.flo import read_flo, write_flo
from stylekit.plugins.registry import PluginInfo
from stylekit.recipe.load import load_recipe
from stylekit.run.build import build_flow
from stylekit.files.images import to_tensor
from stylekit.testing import check_flow, pattern, run_cli, tiny_registry, write_recipe
from stylekit.video.flows import checked_flow
from stylekit.video.warp import certainty, stillness, warp

BUILTIN_FLOW = (builtin_flow, PluginInfo("flow", "stylekit", "0.1.0"))


def flow_registry(*extra):
    """The tiny registry with the built-in providers: through their entry point once stylekit
    is installed with it (pip install -e .), added by hand until then."""
    installed = any(ep.value == builtin_flow.__name__ for ep in entry_points(group="stylekit"))
    return tiny_registry(extra if installed else [BUILTIN_FLOW, *extra])


def constant(u: float, v: float, height: int = 12, width: int = 16) -> torch.Tensor:
    return torch.tensor([float(u), float(v)]).view(1, 2, 1, 1).expand(1, 2, height, width).contiguous()


# ---------------------------------------------------------------- warp and certainty


def test_warp_by_a_whole_shift_is_the_shifted_image():
    image = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    warped, inside = warp(image, constant(2, 1))
    # Pixel (x, y) reads (x + 2, y + 1): exact up to the rounding of the sampling grid's
    # normalization (a few float32 ulps of the coordinate, so of the bilinear weights).
    assert torch.allclose(warped[..., :-1, :-2], image[..., 1:, 2:], atol=1e-5)
    expected = torch.zeros(1, 1, 12, 16)
    expected[..., :-1, :-2] = 1
    assert torch.equal(inside, expected)


def test_certainty_of_a_consistent_pan_is_zero_exactly_where_the_source_is_outside():
    backward, forward = constant(3, 0), constant(-3, 0)  # frame t shows t-1 three pixels to the right
    mask = certainty(backward, forward)
    assert mask.shape == (1, 1, 12, 16)
    assert (mask[..., -3:] == 0).all() and (mask[..., :-3] == 1).all()


def test_an_inconsistent_forward_region_is_marked():
    backward, forward = constant(3, 0), constant(-3, 0)
    forward[..., 4:8, 8:12] = torch.tensor([5.0, 0.0]).view(1, 2, 1, 1)  # t-1's block does not lead back
    mask = certainty(backward, forward)
    # Frame t's pixels that read the block (x + 3 in 8..11) are occluded; the rest is as before.
    expected = torch.ones(1, 1, 12, 16)
    expected[..., -3:] = 0
    expected[..., 4:8, 5:9] = 0
    assert torch.equal(mask, expected)


def test_a_motion_boundary_is_marked():
    # The right half moves down two pixels, the left stays: consistent both ways, but the
    # flow jumps between columns 7 and 8, whose central differences see half the jump.
    backward, forward = constant(0, 0), constant(0, 0)
    backward[:, 1, :, 8:] = 2
    forward[:, 1, :, 8:] = -2
    mask = certainty(backward, forward)
    assert (mask[..., 7:9] == 0).all()
    assert (mask[..., :, :7] == 1).all() and (mask[..., :-2, 9:] == 1).all()
    assert (mask[..., -2:, 8:] == 0).all()  # read from below the frame


# ---------------------------------------------------------------- .flo files


def test_flo_round_trip(tmp_path):
    flow = torch.randn(1, 2, 5, 7, generator=torch.Generator().manual_seed(2)) * 10
    write_flo(tmp_path / "a.flo", flow)
    assert torch.equal(read_flo(tmp_path / "a.flo"), flow)


TAG = struct.pack("<f", 202021.25)


@pytest.mark.parametrize("content, said", [
    (b"HEIP" + struct.pack("<ii", 2, 2) + bytes(32), "not a Middlebury .flo file"),  # the tag's bytes reversed
    (TAG + struct.pack("<ii", 4, 3) + bytes(50), "the .flo file says 4x3 but holds 62 bytes, not 108"),
    (TAG[:3], "not a Middlebury .flo file"),
    (TAG + struct.pack("<ii", 0, 3), "a .flo header of 0x3 pixels is not a flow file's"),
], ids=["wrong-tag", "truncated", "shorter-than-a-header", "empty-size"])
def test_a_bad_flo_file_is_one_message_naming_it(tmp_path, content, said):
    path = tmp_path / "bad.flo"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        read_flo(path)
    (problem,) = caught.value.problems
    assert problem.file == str(path) and said in problem.message


# ---------------------------------------------------------------- the built-in providers


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_recovers_a_known_shift(preset):
    check_flow(DIS, {"preset": preset})  # within check_flow's reasoned half a pixel, both ways


def test_dis_gives_a_pair_the_same_flow_whatever_was_asked_before():
    # A resumed video asks for fewer flows than an uninterrupted one: its frames are the same
    # only if a flow depends on its two frames alone.
    wide = pattern(24, 48, "content")
    first, second = (to_tensor(wide.crop((x, 0, x + 40, 24)), (24, 40)) for x in (0, 2))
    provider = DIS(DIS.Params(preset="ultrafast"))
    alone = DIS(DIS.Params(preset="ultrafast")).flow(first, second, FramePair(0, 1))
    provider.flow(second, first, FramePair(1, 0))
    assert torch.equal(provider.flow(first, second, FramePair(0, 1)), alone)


def test_dis_without_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # an import of cv2 then fails, as when it is not installed
    with pytest.raises(UserError, match=r"flow 'dis' needs OpenCV, which is not installed - pip install 'stylekit\[video\]'"):
        DIS(DIS.Params())


def write_true_flows(folder, forward="flow/forward_{source}_{target}.flo", backward="flow/backward_{source}_{target}.flo",
                     first=0):
    _, _, forward_flow, backward_flow = shifted_frames()
    (folder / "flow").mkdir(parents=True, exist_ok=True)
    write_flo(folder / forward.format(source=first, target=first + 1), forward_flow)
    write_flo(folder / backward.format(source=first + 1, target=first), backward_flow)


def test_file_reads_the_flows_beside_the_frames(tmp_path):
    write_true_flows(tmp_path)
    check_flow(FlowFiles, frames_dir=tmp_path)
    # Numbered from 1 with padding, as some scripts write them, and absolute patterns.
    patterns = {"forward": str(tmp_path / "flow/f{source:04d}-{target:04d}.flo"),
                "backward": str(tmp_path / "flow/b{source:04d}-{target:04d}.flo"), "first": 1}
    write_true_flows(tmp_path, patterns["forward"], patterns["backward"], first=1)
    check_flow(FlowFiles, patterns, frames_dir=tmp_path / "elsewhere")


def test_file_missing_or_of_another_size_is_one_message_naming_it(tmp_path):
    provider = FlowFiles(FlowFiles.Params())
    source, target, _, _ = shifted_frames()
    with pytest.raises(UserError) as caught:
        provider.flow(source, target, FramePair(3, 4, tmp_path))
    (problem,) = caught.value.problems
    assert problem.file == str(tmp_path / "flow" / "forward_3_4.flo")
    assert "no such file, for the forward flow of frames 3 -> 4 - write the forward flow of every pair" in problem.message
    assert "set flow.params.forward to the pattern your files follow" in problem.message
    (tmp_path / "flow").mkdir()
    write_flo(tmp_path / "flow" / "backward_4_3.flo", torch.zeros(1, 2, 24, 32))
    with pytest.raises(UserError) as caught:
        provider.flow(target, source, FramePair(4, 3, tmp_path))
    (problem,) = caught.value.problems
    assert problem.file == str(tmp_path / "flow" / "backward_4_3.flo")
    assert problem.message == (f"the flow for frames 4 -> 3 is 32x24 pixels, but the frames are {FRAME_SIZE[1]}x"
                               f"{FRAME_SIZE[0]} - compute the flow at the frames' size")


@pytest.mark.parametrize("pattern, said", [
    ("flow/{source}.flo", "lacks {target} - every pair of frames needs a file of its own"),
    ("flow/{frame}_{source}_{target}.flo", "names {frame} - a pattern may name only {source} and {target}"),
    ("flow/{source_{target}.flo", "is not a pattern with {source} and {target}"),
    # Format specs that used to raise KeyError and IndexError past pydantic (a traceback), or
    # that would build a gigabyte of file name.
    ("flow/{source:>{x}}_{target}.flo", "{source} may only be padded to a width, as in {source:05d}"),
    ("flow/{source}_{target:{0}}.flo", "{target} may only be padded to a width, as in {target:05d}"),
    ("flow/{source:999999999}_{target}.flo", "{source} may only be padded to a width"),
])
def test_file_patterns_name_both_frames(pattern, said):
    with pytest.raises(ValueError, match=re.escape(said)):
        FlowFiles.Params(forward=pattern)
    assert FlowFiles.Params(forward="f/{source:05d}-{target:5}.flo").forward == "f/{source:05d}-{target:5}.flo"


@pytest.fixture(scope="module")
def raft_weights(tmp_path_factory):
    """A state dict of a randomly initialized raft_small (4 MB): it runs, it is not trained."""
    from torchvision.models.optical_flow import raft_small

    path = tmp_path_factory.mktemp("raft") / "raft_small.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(raft_small(weights=None).state_dict(), path)
    return path


def test_raft_runs_from_a_weights_file(raft_weights):
    # Frames smaller than RAFT's 128 pixels are padded, and the flow cropped back; untrained
    # weights give no accurate flow, so only the contract is checked.
    check_flow(RAFT, {"model": "raft_small", "weights": str(raft_weights), "iterations": 1}, tolerance=None)


def test_raft_with_a_bad_weights_file_is_one_message_naming_it(tmp_path, raft_weights):
    (tmp_path / "notes.pt").write_text("not a state dict")
    for params, said in [({"weights": str(tmp_path / "notes.pt")}, f"cannot read {tmp_path / 'notes.pt'} as a torch "
                                                                    "state dict"),
                         ({"weights": str(raft_weights)}, f"{raft_weights} holds no raft_large weights")]:
        with pytest.raises(UserError) as caught:
            RAFT(RAFT.Params(**params))
        (problem,) = caught.value.problems
        assert problem.field == "params.weights" and problem.message.startswith(said)
    with pytest.raises(ValueError, match=f'"{tmp_path / "gone.pt"}" is not a file - give the path of a state dict'):
        RAFT.Params(weights=str(tmp_path / "gone.pt"))


# ---------------------------------------------------------------- what a provider returns, checked


class Given(FlowProvider):
    """Returns what the test hands it."""

    name = "given"

    def flow(self, source, target, pair):
        return self.answer()


def provider_returning(answer):
    provider = Given(Given.Params())
    provider.answer = answer
    return provider


def test_checked_flow_names_a_provider_that_returns_nan():
    source, target, forward, _ = shifted_frames()
    nan = forward.clone()
    nan[0, 1, 5, 5] = float("nan")
    with pytest.raises(PluginError) as caught:
        checked_flow(provider_returning(lambda: nan), source, target, FramePair(7, 8), "stylekit-given")
    assert str(caught.value) == ("flow: flow 'given' of package 'stylekit-given' broke the contract for frames 7 -> 8: "
                                 f"flow() returned 1 non-finite values (NaN or infinity) among its {nan.numel()} - "
                                 "a bug in stylekit-given")
    assert (caught.value.package, caught.value.kind, caught.value.component) == ("stylekit-given", "flow", "given")


@pytest.mark.parametrize("answer, said", [
    (lambda: torch.zeros(2, 48, 64), "a tensor of shape (2, 48, 64), not (1, 2, 48, 64) as the frames are"),
    (lambda: torch.zeros(1, 2, 48, 64, dtype=torch.long), "a torch.int64 tensor, not float32"),
    (lambda: None, "NoneType, not a tensor of shape (1, 2, 48, 64)"),
])
def test_checked_flow_names_a_provider_that_returns_another_thing(answer, said):
    source, target, _, _ = shifted_frames()
    with pytest.raises(PluginError, match=r"flow 'given' of package 'p' broke the contract .* returned " + said.replace(
            "(", r"\(").replace(")", r"\)")):
        checked_flow(provider_returning(answer), source, target, FramePair(0, 1), "p")


def test_checked_flow_passes_the_users_errors_and_names_the_providers_bugs():
    source, target, _, _ = shifted_frames()

    def says_what_is_wrong():
        raise UserError("no such file")

    with pytest.raises(UserError, match="no such file"):
        checked_flow(provider_returning(says_what_is_wrong), source, target, FramePair(0, 1), "p")
    with pytest.raises(PluginError, match=r"flow 'given' of package 'p' raised ZeroDivisionError: division by zero in "
                                          r"flow\(\) for frames 0 -> 1 - a bug in p") as caught:
        checked_flow(provider_returning(lambda: 1 / 0), source, target, FramePair(0, 1), "p")
    assert isinstance(caught.value.original, ZeroDivisionError)
    half = checked_flow(provider_returning(lambda: torch.ones(1, 2, 48, 64, dtype=torch.float16)), source, target,
                        FramePair(0, 1), "p")
    assert half.dtype == torch.float32 and half.device.type == "cpu"


def test_stillness_is_one_below_half_a_pixel_and_zero_beyond_one():
    # Four pixels moved by 0, 0.5, 0.75 (a 3-4-5 triangle scaled) and 2 pixels.
    flow = torch.tensor([[[[0.0, 0.5, 0.45, 2.0]], [[0.0, 0.0, 0.6, 0.0]]]])
    assert torch.allclose(stillness(flow), torch.tensor([[[[1.0, 1.0, 0.5, 0.0]]]]))
