"""fastnet control plane: project config, address management and orchestration."""
