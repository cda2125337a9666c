"""Threat-intelligence sharing: STIX 2.1 from detections, anonymization, feed scanning."""
