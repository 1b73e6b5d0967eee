from telehealth.cli import main

main()
