"""The `dis` provider's matched motions (`matches = true`, stylekit/builtins/flow_matches.py):
a small region that moves farther than coarse-to-fine DIS can follow gets the motion SIFT
matches agree on, and wherever DIS's flow explains the frames it is left as it was."""

import numpy as np
import torch
import torch.nn.functional as F

from stylekit.builtins import flow_matches
from stylekit.builtins.flow import DIS, grey_8bit
from stylekit.contract.flow import FramePair

HEIGHT, WIDTH = 96, 160


def texture(seed: int) -> torch.Tensor:
    """Blobs about 4 px across: detail for DIS and for SIFT's keypoints."""
    noise = torch.rand(1, 3, HEIGHT // 4, WIDTH // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(HEIGHT, WIDTH), mode="bicubic", align_corners=False).clamp(0, 1)


def with_disc(background: torch.Tensor, disc: torch.Tensor, x: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The background with a disc of `disc`'s texture centred at (x, 48); the texture moves
    with the disc. Returns the frame and the disc's pixels."""
    ys, xs = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    inside = (xs - x) ** 2 + (ys - 48) ** 2 <= radius ** 2
    carried = torch.roll(disc, shifts=x - WIDTH // 2, dims=3)
    return torch.where(inside, carried, background), inside


def flows(first, second):
    """DIS's flow alone and with the matched motions, first to second."""
    return (DIS(DIS.Params()).flow(first, second, FramePair(0, 1)),
            DIS(DIS.Params(matches=True)).flow(first, second, FramePair(0, 1)))


def changed_only_by_the_rule(first, second, plain, matched) -> bool:
    """Whether every pixel whose flow changed is one DIS's flow did not explain (its warping
    error over the window above UNEXPLAINED) and now has one of the matched motions."""
    import cv2

    a, b = grey_8bit(first), grey_8bit(second)
    motions = torch.from_numpy(np.array(flow_matches.matched_motions(cv2, a, b))).view(-1, 2, 1)
    dis_error = torch.from_numpy(flow_matches.warping_error(cv2, a, b, plain[0].permute(1, 2, 0).numpy()))
    changed = (matched != plain).any(dim=1)[0]
    new = matched[0][:, changed]  # (2, N)
    is_a_motion = (new[None] == motions).all(dim=1).any(dim=0)
    return bool((dis_error[changed] > flow_matches.UNEXPLAINED).all() and is_a_motion.all())


def test_a_small_disc_moving_farther_than_dis_follows_gets_its_motion():
    # A 40 px disc moving 30 px over a still background: at DIS's coarsest scale the disc is a
    # few pixels, and DIS gives it the background's motion (none): an error of the whole move.
    move, radius = 30, 20
    background, disc = texture(1), texture(2)
    first, on_disc = with_disc(background, disc, 60, radius)
    second, on_disc_after = with_disc(background, disc, 60 + move, radius)
    true = torch.zeros(1, 2, HEIGHT, WIDTH)
    true[0, 0][on_disc] = move
    plain, matched = flows(first, second)
    error = lambda flow: (flow - true).norm(dim=1)[0]  # noqa: E731

    assert float((error(plain)[on_disc] <= 1).float().mean()) < 0.2  # the limit this exists for
    # The disc's pixels whose window holds only the disc are explained by its motion; those
    # nearer its edge than half the window see the background too and may keep DIS's flow.
    inner = ((radius - flow_matches.WINDOW // 2 - 1) / radius) ** 2
    assert float((error(matched)[on_disc] <= 1).float().mean()) >= inner
    assert changed_only_by_the_rule(first, second, plain, matched)
    # Away from the disc (farther than the window, in either frame) the background is still:
    # a pixel changed there took a matched motion of the background, as right as SIFT's
    # sub-pixel positions (a tenth of a pixel), never the disc's.
    near = F.max_pool2d((on_disc | on_disc_after).float()[None, None], flow_matches.WINDOW + 2, 1,
                        (flow_matches.WINDOW + 2) // 2)[0, 0].bool()
    assert float(error(matched)[~near].max()) <= float(error(plain)[~near].max()) + 0.1


def test_a_pair_that_dis_explains_keeps_dis_s_flow():
    # The whole frame moved 3 px: DIS explains the pixels, but along the edge the motion
    # leaves by, where its flow points out of the frame; only those may change, to the
    # matched 3 px, which stays inside.
    wide = texture(3)
    first, second = wide[..., :, 3:], wide[..., :, :-3]
    plain, matched = flows(first, second)
    assert changed_only_by_the_rule(first, second, plain, matched)
    changed = (matched != plain).any(dim=1)[0]
    assert not changed[:, : -(3 + flow_matches.WINDOW)].any()
    assert float((matched[0, 0] - 3).abs().max()) <= float((plain[0, 0] - 3).abs().max())


def test_the_matches_agree_on_the_frame_s_translation():
    import cv2

    wide = texture(4)
    first, second = wide[..., 3:, 7:], wide[..., :-3, :-7]  # second is first moved 7 right, 3 down
    motions = flow_matches.matched_motions(cv2, grey_8bit(first), grey_8bit(second))
    assert motions, "no motion found"
    assert torch.allclose(torch.tensor(motions[0]), torch.tensor([7.0, 3.0]), atol=0.3)


def test_a_pair_gets_the_same_matched_flow_whatever_was_asked_before():
    # As for DIS alone (tests/test_flow.py): a resumed video asks for fewer flows than an
    # uninterrupted one, and its frames are the same only if a flow depends on its two frames.
    background, disc = texture(1), texture(2)
    first, _ = with_disc(background, disc, 60, 20)
    second, _ = with_disc(background, disc, 90, 20)
    provider = DIS(DIS.Params(matches=True))
    alone = DIS(DIS.Params(matches=True)).flow(first, second, FramePair(0, 1))
    provider.flow(second, first, FramePair(1, 0))
    provider.flow(texture(5), texture(6), FramePair(2, 3))
    again = provider.flow(first, second, FramePair(0, 1))
    assert torch.equal(again, alone) and not torch.equal(alone, flows(first, second)[0])  # the matched path ran


def test_a_video_begun_before_matches_existed_keeps_its_work_folder_key(tmp_path):
    # Work folders kept the flow's params as they were then ({"preset": "medium"}); off,
    # `matches` computes what DIS computed before it, so the key leaves it out; on, it is
    # another flow, and the key says so.
    from planning import plan_for
    from stylekit.testing import write_recipe
    from stylekit.video.start import run_key

    plan = plan_for(write_recipe(tmp_path))
    assert run_key(plan, DIS(DIS.Params()), "clip")["flow"]["params"] == {"preset": "medium"}
    assert run_key(plan, DIS(DIS.Params(matches=True)), "clip")["flow"]["params"] == {"preset": "medium", "matches": True}


def test_a_motion_that_does_not_explain_the_frames_is_never_taken(monkeypatch):
    # A still scene, a flow wrong everywhere (5 px), and a matched motion as wrong (30 px): on
    # a random texture each is right by chance here and there, and the wrong motion beats the
    # wrong flow at some pixels, but it explains none of them, so none takes it; the right
    # motion (none), offered after it, explains them all and replaces the wrong flow wherever
    # that does not explain them (on smooth patches a 5 px shift can).
    import cv2

    still = grey_8bit(texture(7))
    wrong_flow = np.zeros(still.shape + (2,), np.float32)
    wrong_flow[..., 0] = 5
    wrong_motion, right_motion = np.float32([30, 0]), np.float32([0, 0])
    monkeypatch.setattr(flow_matches, "matched_motions", lambda cv2, a, b, found: [wrong_motion])
    fused = flow_matches.with_matched_motions(cv2, still, still, wrong_flow)
    beats = flow_matches.warping_error(cv2, still, still, np.broadcast_to(wrong_motion, wrong_flow.shape)) \
        + flow_matches.MARGIN < flow_matches.warping_error(cv2, still, still, wrong_flow)
    assert beats.any()  # the case this is about
    assert np.array_equal(fused, wrong_flow)
    monkeypatch.setattr(flow_matches, "matched_motions", lambda cv2, a, b, found: [wrong_motion, right_motion])
    fused = flow_matches.with_matched_motions(cv2, still, still, wrong_flow)
    unexplained = flow_matches.warping_error(cv2, still, still, wrong_flow) > flow_matches.UNEXPLAINED
    assert unexplained.any() and (fused[unexplained] == 0).all()


def test_keypoints_kept_between_flows_give_the_flow_found_afresh():
    # A provider keeps each frame's keypoints (found once a frame, not once a pair); what
    # they give is what finding them again gives, and another frame is never taken for one
    # kept (they are keyed by the pixels).
    import cv2

    background, disc = texture(1), texture(2)
    first, _ = with_disc(background, disc, 60, 20)
    second, _ = with_disc(background, disc, 90, 20)
    cache = flow_matches.KeypointCache(size=2)
    a, b = grey_8bit(first), grey_8bit(second)
    fresh = flow_matches.keypoints(cv2, a)
    kept = cache(cv2, a)
    assert cache(cv2, a) is kept and np.array_equal(kept[0], fresh[0]) and np.array_equal(kept[1], fresh[1])
    other = cache(cv2, b)
    assert not np.array_equal(other[0], kept[0])
    cache(cv2, grey_8bit(texture(9)))  # a third frame: the least recently used (a) goes
    assert len(cache.found) == 2 and cache(cv2, a) is not kept
