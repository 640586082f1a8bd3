export DIB_CLOUD_INIT_DATASOURCES="ConfigDrive, OpenStack, NoCloud"
