DROP TABLE blocks;
DELETE FROM rollup_marks WHERE tier = 3;
