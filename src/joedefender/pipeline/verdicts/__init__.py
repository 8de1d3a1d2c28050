"""What a final sample job does for its alerts: the comment on every alert (write-back), the
optional alert classification, and the verdict actions (indicators pushed to Defender)."""
