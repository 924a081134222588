"""Model processors Ferry can run, and how EAS processor codes map onto them."""
