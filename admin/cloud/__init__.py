"""Cloud VM control, run by the admin: provider clients and the VM status refresh."""
