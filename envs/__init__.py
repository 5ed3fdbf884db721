"""coldstart-gym: a GPU cold-start cluster simulator and Gymnasium environments over it."""
