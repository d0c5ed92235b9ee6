DROP TABLE assignments;
DROP TABLE config;
DROP TABLE monitor_servers;
DROP TABLE devices;
DROP TABLE companies;
