"""The operator against a real kube-apiserver (the session-scoped ``control_plane`` fixture)."""
