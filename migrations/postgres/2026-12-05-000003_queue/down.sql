DROP TABLE queue_lanes;
DROP TABLE job_parts;
DROP TABLE job_outputs;
DROP TABLE jobs;
DROP TABLE collectors;
