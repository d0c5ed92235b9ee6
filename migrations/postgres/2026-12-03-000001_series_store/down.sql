DROP TABLE latest_polls;
DROP TABLE polls;
DROP TABLE series;
DROP TABLE series_names;
