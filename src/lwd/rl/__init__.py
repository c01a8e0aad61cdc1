"""lwd.rl."""
