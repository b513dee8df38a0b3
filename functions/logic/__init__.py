"""What the handlers delegate to: plain functions over plain values and ports, no events."""
