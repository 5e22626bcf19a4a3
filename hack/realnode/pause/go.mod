// The real node's sandbox ("pause") image: a static binary that sleeps until SIGINT or
// SIGTERM and reaps children. Standard library only, so it builds offline.
module example.invalid/kdoctor-pause

go 1.22
