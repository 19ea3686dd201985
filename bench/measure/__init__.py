"""The measurement engine: orchestration, hot loop, schedules, arms, samplers, memory, FLOPs, environment."""
