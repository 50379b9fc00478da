"""wordslab-dashboard admin: Flask-Admin forms and actions over the config store."""
