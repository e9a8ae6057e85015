"""What people read: plots and tables attached to the Allure results, Allure metadata, the offline HTML report."""
