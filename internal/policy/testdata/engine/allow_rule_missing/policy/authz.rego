package test.authz

roles contains "Gamma"
