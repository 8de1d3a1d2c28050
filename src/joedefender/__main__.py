from joedefender.hosts.cli import main

main()
