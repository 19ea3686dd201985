"""History: every run kept by commit and machine, series, change points and the history gate."""
