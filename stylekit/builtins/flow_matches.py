"""Flow where DIS loses a small region that moves far: the motions feature matches agree on.

DIS, like every coarse-to-fine method, settles each motion at its coarsest scale first. A
region smaller than the distance it moves between frames (a ball, a bird, a car far off) is
a few pixels there, and DIS gives it the motion of what surrounds it: on the benchmark's
synthetic clip (benchmarks/video_clips.py: a 58 px disc moving 15 px a frame) its end-point
error on the disc was 6 to 17 px on 7 of 20 frames, under 0.4 px elsewhere. SIFT keypoints
have no such limit: a keypoint on the region matches across the frames however far it went.

So the motions that several matches agree on (each a translation) are tried wherever DIS's
flow does not explain the frames (the brightness it warps over is off by more than
`UNEXPLAINED` grey levels, averaged over a `WINDOW` square), and a pixel there takes the
translation that does explain it, and better than DIS's flow by `MARGIN`. Pixels that DIS explains keep its flow, so
a clip without such regions gets DIS's flow back unchanged wherever DIS was right.

Works on the (H, W) uint8 grey frames and (H, W, 2) float32 flow of OpenCV; OpenCV comes
with the `video` extra, imported by the caller.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

#: Side of the square over which a flow's warping error is averaged: small, so that a
#: region's motion does not spread onto the background around it (a 9 px window moved the
#: disc's motion onto a ring around it; 5 px kept the background's error within 0.15 px of
#: DIS's, measured on the synthetic clip).
WINDOW = 5
#: Mean absolute grey-level difference (of 255) above which DIS's flow is taken not to explain
#: a pixel: well above the noise and resampling of a right flow (1 to 3 levels).
UNEXPLAINED = 6.0
#: How much better (grey levels) a matched motion must explain a pixel to replace DIS's flow.
MARGIN = 2.0
#: Matches that must agree (within CLUSTER_RADIUS px) for a motion to be tried.
MIN_SUPPORT = 6
CLUSTER_RADIUS = 1.5
#: At most this many motions are tried (the best supported first).
MOST_MOTIONS = 8
#: Lowe's ratio test: a match is kept when its descriptor is this much closer than the next.
RATIO = 0.75
#: The most keypoints kept a frame (the strongest): matching compares every pair, so without
#: a cap a textured 4K frame (20 000 keypoints) took 12 s a flow and 1.9 GB.
MOST_KEYPOINTS = 2000


def keypoints(cv2, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT's keypoints of a grey frame, as (N, 2) positions and their descriptors."""
    found, descriptors = cv2.SIFT_create(nfeatures=MOST_KEYPOINTS).detectAndCompute(frame, None)
    return np.array([k.pt for k in found], dtype=np.float64).reshape(-1, 2), descriptors


class KeypointCache:
    """The keypoints of the frames seen last, found once a frame: a video asks for about 16
    flows with each frame in them (8 a frame), and finding keypoints is most of their cost.
    Keyed by the frame's pixels, so a frame is never mistaken for another (a provider may be
    given several clips); what it returns is what `keypoints` computes, bit for bit."""

    def __init__(self, size: int = 16):
        self.size, self.found, self.lock = size, OrderedDict(), threading.Lock()

    def __call__(self, cv2, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        key = (frame.shape, hashlib.sha1(frame.tobytes()).digest())
        with self.lock:
            if key in self.found:
                self.found.move_to_end(key)
                return self.found[key]
        result = keypoints(cv2, frame)
        with self.lock:
            self.found[key] = result
            while len(self.found) > self.size:
                self.found.popitem(last=False)
        return result


def matched_motions(cv2, source: np.ndarray, target: np.ndarray, found=keypoints) -> list[np.ndarray]:
    """The translations (dx, dy), source to target, that at least MIN_SUPPORT SIFT matches
    agree on, the best supported first, each the mean of its matches. `found`: how a frame's
    keypoints are had (a `KeypointCache` keeps them between calls)."""
    points_s, desc_s = found(cv2, source)
    points_t, desc_t = found(cv2, target)
    if desc_s is None or desc_t is None or len(points_s) < 2 or len(points_t) < 2:
        return []
    pairs = cv2.BFMatcher().knnMatch(desc_s, desc_t, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_SUPPORT:
        return []
    moves = np.array([points_t[m.trainIdx] - points_s[m.queryIdx] for m in good], dtype=np.float64)
    motions = []
    while len(moves) >= MIN_SUPPORT and len(motions) < MOST_MOTIONS:
        # Each whole-pixel bin's support is the matches within CLUSTER_RADIUS of its centre:
        # linear in the matches, where comparing every pair would be quadratic.
        bins, counts = np.unique(np.round(moves), axis=0, return_counts=True)
        busiest = bins[np.argsort(-counts)[:32]]
        support = np.array([(np.linalg.norm(moves - b, axis=1) <= CLUSTER_RADIUS).sum() for b in busiest])
        if support.max() < MIN_SUPPORT:
            break
        centre = busiest[support.argmax()]
        members = np.linalg.norm(moves - centre, axis=1) <= CLUSTER_RADIUS
        motions.append(moves[members].mean(axis=0).astype(np.float32))
        moves = moves[~members]
    return motions


def warping_error(cv2, source: np.ndarray, target: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Per pixel of `source`, the mean absolute grey difference to `target` warped back by
    `flow`, over a WINDOW square. A flow that leaves the frame by more than a pixel counts as
    255 there; within a pixel of the edge the edge's pixel is read (a right flow along the
    border often points a hundredth of a pixel out)."""
    height, width = source.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    to_x, to_y = xs + flow[..., 0], ys + flow[..., 1]
    warped = cv2.remap(target.astype(np.float32), to_x, to_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = np.abs(source.astype(np.float32) - warped)
    error[(to_x < -1) | (to_x > width) | (to_y < -1) | (to_y > height)] = 255.0
    return cv2.blur(error, (WINDOW, WINDOW))


def with_matched_motions(cv2, source: np.ndarray, target: np.ndarray, flow: np.ndarray,
                         found=keypoints) -> np.ndarray:
    """`flow` (DIS's, source to target), with the matched motions where they explain the
    frames clearly better and `flow` does not explain them. `found`: as `matched_motions`."""
    motions = matched_motions(cv2, source, target, found)
    if not motions:
        return flow
    best = warping_error(cv2, source, target, flow)
    unexplained = best > UNEXPLAINED
    if not unexplained.any():
        return flow
    fused = flow.copy()
    for motion in motions:
        constant = np.broadcast_to(motion, flow.shape)
        error = warping_error(cv2, source, target, constant)
        # Only where the motion explains the frames itself: better than a wrong flow by
        # chance is not enough (a far move can land on a patch that happens to look closer).
        take = unexplained & (error <= UNEXPLAINED) & (error + MARGIN < best)
        fused[take] = motion
        best = np.where(take, error, best)
    return fused
