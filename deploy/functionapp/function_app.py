"""What the Azure Functions host loads from the package root: joedefender's Functions app.

Everything is in `joedefender.hosts.azure`; this file only builds the app from the app settings.
"""

from joedefender.hosts.azure.entry import app_from_environment

app = app_from_environment()
