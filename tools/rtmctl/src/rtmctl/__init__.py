"""rtmctl: RTM's operator command line. It talks to RTM's internal REST API only."""
