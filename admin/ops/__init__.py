"""Operations behind the admin forms: clone, download, delete... each usable without Flask."""
