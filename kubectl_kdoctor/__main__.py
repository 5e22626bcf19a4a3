"""``python -m kubectl_kdoctor``."""

from kubectl_kdoctor.cli import main

if __name__ == "__main__":
    main()
