"""Run results: verdicts, the KdoctorReport wire form, and renderers."""
