"""The warping error of stylekit.video.metrics on clips whose flow is known exactly."""

import math

import torch

from stylekit.video.metrics import content_distance, pair_error, style_distance, warping_errors


#: grid_sample takes coordinates normalized to [-1, 1]: the round trip through that moves a
#: sample point by float32 rounding (~1e-7 of a pixel), so an exact warp's squared error is
#: ~1e-14 per pixel, not 0; a real mismatch of one 8-bit level is (1/255)^2 ~ 1.5e-5.
EXACT = 1e-10


def zero_flows(height, width):
    return lambda t, k: (torch.zeros(1, 2, height, width), torch.zeros(1, 2, height, width))


def test_a_static_clip_has_no_warping_error():
    frame = torch.rand(1, 3, 12, 16)
    [short] = warping_errors([frame] * 4, zero_flows(12, 16), offsets=(1,))
    assert len(short.per_frame) == 3 and max(short.per_frame) < EXACT


def test_a_pan_warped_by_its_true_flow_has_no_error_where_the_flow_is_certain():
    # Frame t is frame t-1 moved right by one whole pixel: the backward flow is -1 along x,
    # and bilinear sampling at whole pixels is exact.
    base = torch.rand(1, 3, 10, 20)
    frames = [torch.roll(base, shifts=t, dims=-1) for t in range(3)]
    backward = torch.zeros(1, 2, 10, 20)
    backward[:, 0] = -1
    forward = -backward
    [short] = warping_errors(frames, lambda t, k: (k * backward, k * forward), offsets=(1,))
    # roll wraps the last column into the first, which the flow says came from outside the
    # frame: the certainty leaves it out, so what is compared is exactly equal.
    assert len(short.per_frame) == 2 and max(short.per_frame) < EXACT


def test_flicker_is_the_mean_squared_rgb_distance():
    # Two constant frames 0.1 apart on every channel: 3 x 0.1^2 per pixel.
    first, second = torch.full((1, 3, 8, 8), 0.4), torch.full((1, 3, 8, 8), 0.5)
    assert math.isclose(pair_error(second, first, torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)), 0.03,
                        rel_tol=1e-5)


def test_a_pair_with_no_certain_pixel_is_left_out_not_counted_as_zero():
    frames = [torch.rand(1, 3, 6, 6) for _ in range(3)]
    far = torch.full((1, 2, 6, 6), 100.0)  # every source outside the frame

    def flows(t, k):
        return (far, -far) if t == 1 else (torch.zeros(1, 2, 6, 6), torch.zeros(1, 2, 6, 6))

    [short] = warping_errors(frames, flows, offsets=(1,))
    assert len(short.per_frame) == 1 and short.per_frame[0] > 0


def test_offsets_longer_than_the_clip_are_skipped():
    assert [e.offset for e in warping_errors([torch.rand(1, 3, 4, 4)] * 5, zero_flows(4, 4))] == [1]


def test_content_and_style_distances_are_zero_for_the_same_features_and_relative_otherwise():
    features = {name: torch.rand(1, 4, 6, 6) for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")}
    assert content_distance(features, features) == 0.0
    assert style_distance(features, features) == 0.0
    doubled = {name: 2 * value for name, value in features.items()}
    # F(x) = 2 F(c): |F(c)|^2 / |F(c)|^2 = 1; G(x) = 4 G(s): |3 G| / |G| = 3.
    assert math.isclose(content_distance(doubled, features), 1.0, rel_tol=1e-5)
    assert math.isclose(style_distance(doubled, features), 3.0, rel_tol=1e-5)
