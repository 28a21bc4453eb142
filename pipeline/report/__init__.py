"""Reports on data: per-config statistics, quality against JAT's experts, and plots."""
