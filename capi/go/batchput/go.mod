module batchput

go 1.19
