from sniffer.cli import main

main()
