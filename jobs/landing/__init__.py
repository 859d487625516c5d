"""Landing (汇): department files as received -> landing/, raw/ and quarantine/."""
