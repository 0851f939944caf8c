"""The control plane: deployments checked off the serving loop, handed whole to every worker, kept in a store
(a local folder, or etcd for a fleet)."""
