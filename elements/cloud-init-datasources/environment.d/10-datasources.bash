# Comma list of cloud-init datasources to search, in order (as DIB).
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-}
