from fastgw.config.load import ConfigError, LoadedConfig, default_config_path, load_config, load_config_bytes

__all__ = ["ConfigError", "LoadedConfig", "default_config_path", "load_config", "load_config_bytes"]
