from django.apps import AppConfig


class DeployerConfig(AppConfig):
    name = "deployer"
    verbose_name = "Ferry deployer"

    def ready(self) -> None:
        # The services app reaches the deployer only through this port (services/ports.py).
        from services.ports import register_deployer

        from .port import DeployerPort

        register_deployer(DeployerPort())
