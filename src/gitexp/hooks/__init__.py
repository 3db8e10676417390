"""Git hooks: installing the stubs (`install`) and what they run (`run`)."""
