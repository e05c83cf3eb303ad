from sniffer.head_start import main

main()
