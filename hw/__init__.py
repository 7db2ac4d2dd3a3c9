"""Addition-only hardware cores in Amaranth HDL (no torch: reads the integer IR with numpy)."""
