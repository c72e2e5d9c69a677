"""What people read: outcomes in words, charts, the audit notebook's helpers and the review
widget, and running a notebook headless into a run folder."""
