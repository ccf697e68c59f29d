"""Text in photos with RapidOCR's PP-OCR models on OpenVINO, answered as Rekognition's TextDetections.

RapidOCR (rapidocr 3.10.0) bundles the PP-OCRv6 detector and recogniser and the PP-OCR angle classifier as
ONNX and runs them on its own OpenVINO engine; it reads the ONNX itself (the recogniser's character list
is in the file's metadata), so these models are not converted into the IR cache. The detector's input is
limited to DETECTOR_SIDE on its longest side: the default (shortest side at least 736) cost 0.5-2.3 s a
photo on one core.

Each recognised line is a LINE; its words (RapidOCR's word boxes) are WORDs whose ParentId is the line's
Id. Lines come first, in reading order, with Ids 0..n-1, then their words; at most MAX_WORDS words (as
Rekognition's DetectText), and a line only with the words kept.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

DETECTOR_SIDE = 640
MAX_WORDS = 100
MIN_CONFIDENCE = 0.5            # RapidOCR's own text_score


def engine_params(threads: int) -> dict:
    """RapidOCR's settings: every model on OpenVINO with this many threads, the detector's input bounded."""
    from rapidocr import EngineType
    params: dict = {"Global.log_level": "warning", "Global.return_word_box": True,
                    "Global.text_score": MIN_CONFIDENCE,
                    "EngineConfig.openvino.inference_num_threads": threads,
                    "Det.limit_side_len": DETECTOR_SIDE, "Det.limit_type": "max"}
    for model in ("Det", "Cls", "Rec"):
        params[f"{model}.engine_type"] = EngineType.OPENVINO
    return params


def prepare(image: Image.Image) -> np.ndarray:
    """RapidOCR's input: the picture as a BGR array."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _geometry(polygon, width: int, height: int) -> dict:
    """Rekognition's Geometry (BoundingBox and a four-point Polygon, fractions of the picture) of pixel corners."""
    points = [(min(max(float(x) / width, 0.0), 1.0), min(max(float(y) / height, 0.0), 1.0)) for x, y in polygon]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return {"BoundingBox": {"Width": round(max(xs) - min(xs), 6), "Height": round(max(ys) - min(ys), 6),
                            "Left": round(min(xs), 6), "Top": round(min(ys), 6)},
            "Polygon": [{"X": round(x, 6), "Y": round(y, 6)} for x, y in points]}


def text_detections(lines: list[tuple[str, float, list]], words: list[list[tuple[str, float, list]]],
                    width: int, height: int) -> list[dict]:
    """LINE entries, then WORD entries (ParentId: their line), from (text, score 0-1, four corners) tuples."""
    kept_lines, kept_words = [], []
    for (text, score, polygon), line_words in zip(lines, words):
        room = MAX_WORDS - len(kept_words)
        if room <= 0:
            break
        line_id = len(kept_lines)
        kept_lines.append({"DetectedText": text, "Type": "LINE", "Id": line_id,
                           "Confidence": round(float(score) * 100, 3), "Geometry": _geometry(polygon, width, height)})
        kept_words += [(line_id, word) for word in line_words[:room]]
    first = len(kept_lines)
    return kept_lines + [{"DetectedText": text, "Type": "WORD", "Id": first + number, "ParentId": line_id,
                          "Confidence": round(float(score) * 100, 3), "Geometry": _geometry(polygon, width, height)}
                         for number, (line_id, (text, score, polygon)) in enumerate(kept_words)]


class TextReader:
    """RapidOCR with the project's settings; read() answers one picture."""

    def __init__(self, threads: int):
        from rapidocr import RapidOCR
        self.engine = RapidOCR(params=engine_params(threads))

    def read(self, bgr: np.ndarray) -> list[dict]:
        """TextDetections of a BGR array."""
        found = self.engine(bgr)
        if found.txts is None or found.boxes is None:
            return []
        lines = [(text, score, box.tolist()) for text, score, box in zip(found.txts, found.scores, found.boxes)]
        words = [[(w, s, _corners(b)) for w, s, b in line if w.strip()] for line in (found.word_results or ())]
        if len(words) != len(lines):           # no word boxes: each line is one word
            words = [[line] for line in lines]
        return text_detections(lines, words, bgr.shape[1], bgr.shape[0])


def _corners(box) -> list:
    return [[float(x), float(y)] for x, y in box]
