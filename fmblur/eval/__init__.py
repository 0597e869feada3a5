"""Detector evaluation: matching detections to ground truth."""
