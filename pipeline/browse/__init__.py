"""Looking at data: `pipeline render`, `pipeline view` and `pipeline info`."""
