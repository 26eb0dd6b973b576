"""Video: stylizing a clip frame by frame with temporal consistency (Ruder, Dosovitskiy &
Brox 2016): the flow between frames (`warp.py`: warping and the certainty of a flow), the
clip's frames in and out, and the frame loop built on the one run loop."""
